# DGKIP Studio developer commands (Linux and macOS; `make help` lists them).
#
# Every target that needs Python first runs `setup`: it creates .venv with Python 3.11 when it is
# missing and installs the project into it. Setup is recorded in a stamp file named after a checksum
# of pyproject.toml (and the torch pins), so it reruns only when those change and costs nothing
# otherwise.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV ?= .venv
VPY := $(VENV)/bin/python
# Installed before the project so fresh machines and CI resolve this exact build (a local copy on
# the project's machines); `make setup TORCH_PINS=` leaves torch to the project's requirements.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
SETUP_KEY := $(shell { cat pyproject.toml; echo '$(TORCH_PINS)'; } | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.dgkip-setup-$(SETUP_KEY)
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-x -k layering"`; PYTEST_MARK replaces
# the default marker filter ('not slow'), e.g. `make test PYTEST_MARK="slow or not slow"`.
PYTEST_ARGS ?=
PYTEST_MARK ?=

.PHONY: help setup run test frozen smoke desktop icons clean distclean

help:
	@echo "make run        set up .venv, then start the app with the sample dataset"
	@echo "                (no display on Linux: explains why and runs the headless --self-test)"
	@echo "make test       set up .venv, then run the default test suite (offscreen Qt)"
	@echo "make frozen     build the PyInstaller app: dist/DGKIP Studio/DGKIP Studio"
	@echo "make smoke      run the frozen app's --self-test headless"
	@echo "make desktop    install the desktop entry and icons for this user"
	@echo "make icons      re-render the PNG/ICO icons from resources/icons/dgkip-studio.svg"
	@echo "make clean      remove build outputs and caches (keeps .venv); distclean also removes .venv"

$(VPY):
	@if [ -z "$(PYTHON)" ]; then \
	    echo "error: Python 3.11 not found; install python3.11 or run make PYTHON=/path/to/python3.11" >&2; \
	    exit 1; \
	fi
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' || { \
	    echo "error: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); DGKIP Studio needs 3.11 or newer (make PYTHON=...)" >&2; \
	    exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): | $(VPY)
	$(if $(strip $(TORCH_PINS)),$(VPY) -m pip install $(TORCH_PINS))
	$(VPY) -m pip install -e '.[dev]'
	@rm -f $(VENV)/.dgkip-setup-*
	@touch $@

setup: $(STAMP)

# With no display on Linux/BSD (no DISPLAY or WAYLAND_DISPLAY, QT_QPA_PLATFORM unset) the window
# cannot open. Rather than letting Qt abort with its xcb error, say so and run the app's headless
# --self-test, so `make run` over SSH or in a container still checks the installation; the exit
# status is the self-test's. Set QT_QPA_PLATFORM (e.g. offscreen, vnc) to override the check.
run: setup
	@if [ "$$(uname -s)" != Darwin ] && [ -z "$$DISPLAY$$WAYLAND_DISPLAY$$QT_QPA_PLATFORM" ]; then \
	    echo "make run: no display (DISPLAY and WAYLAND_DISPLAY are unset), so the window cannot open."; \
	    echo "make run: running the headless self-test instead: QT_QPA_PLATFORM=offscreen $(VPY) -m dgkip_gui --self-test"; \
	    echo "make run: to see the window, run from a desktop session, over 'ssh -X', or in a VNC session."; \
	    QT_QPA_PLATFORM=offscreen $(VPY) -m dgkip_gui --self-test; \
	else \
	    echo "make run: on Linux/X11 Qt needs these system packages (the app names any that are missing):"; \
	    echo "make run:   Debian/Ubuntu: libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-randr0 libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0 libx11-xcb1"; \
	    echo "make run:   Fedora: xcb-util-cursor xcb-util-wm xcb-util-image xcb-util-keysyms xcb-util-renderutil libxkbcommon-x11 libX11-xcb"; \
	    $(VPY) -m dgkip_gui --sample; \
	fi

test: setup
	QT_QPA_PLATFORM=offscreen $(VPY) -m pytest $(if $(strip $(PYTEST_MARK)),-m "$(PYTEST_MARK)") $(PYTEST_ARGS)

frozen: setup
	packaging/build.sh

smoke:
	packaging/smoke.sh

desktop: setup
	packaging/install_desktop_entry.sh

icons: setup
	QT_QPA_PLATFORM=offscreen $(VPY) packaging/render_icons.py

clean:
	rm -rf build dist .pytest_cache *.egg-info tests/_artifacts
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
