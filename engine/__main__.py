"""``python -m engine`` runs the headless CLI."""
from engine.cli import main

raise SystemExit(main())
