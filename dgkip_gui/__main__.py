"""``python -m dgkip_gui`` starts DGKIP Studio (see :func:`dgkip_gui.app.main` for options)."""
from dgkip_gui.app import main

raise SystemExit(main())
