# pymixnn: build, demo and test targets (GNU make).
#
#   make demo   creates .venv, installs pymixnn, fits the bundled theophylline data
#   make test   installs test extras and the Debian R packages, runs ruff, pytest (the Python
#               vignettes rendered in quick mode among them), the R tests, then the docs build
#               (its gallery links to those quick renders);
#               the long recovery fits (pytest marker `slow`) are left to
#   make test-all   the same with every test (about twice as long)
#   make vignettes   renders vignettes/ to HTML in build/vignettes (needs what make test installs)
#   make docs   builds the documentation site (vignettes/docs, Sphinx) into build/docs and runs its
#               doctests; zero warnings allowed
#
# Install steps are recorded by stamp files inside .venv and .venv-r, so a second run
# reinstalls nothing. `make distclean` removes both (and with them the stamps).
#
# Two virtualenvs: .venv (pymixnn for Python: the current numpy 2 / pandas 3, rpy2, the test
# tools) runs pytest, the demo and the Python vignettes; .venv-r is the R package's Python
# (reticulate's RETICULATE_PYTHON in the R tests): Debian's R reticulate 1.28 predates NumPy 2
# and pandas 3, so there numpy<2 and pandas<3, as install_pymixnn() (rpkg/R/python.R) pins them.

SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

# The only torch release installed: a local CPU wheel. Never leave torch unpinned.
TORCH_REQ := torch==2.13.0

# Debian 12 packages for the R side (rpy2 builds against r-base-dev; R tests).
R_APT_PKGS := r-base-core r-base-dev r-cran-nlme r-cran-lme4 r-cran-reticulate \
	r-cran-testthat r-cran-ggplot2 r-cran-gridextra r-cran-rlang r-cran-scales \
	r-cran-mass r-cran-mclust r-cran-survival r-cran-ordinal r-cran-knitr \
	r-cran-rmarkdown r-cran-jsonlite r-cran-png r-cran-desolve pandoc

CORE_STAMP  := $(VENV)/.installed-core
R_APT_STAMP := $(VENV)/.installed-r-apt
TEST_STAMP  := $(VENV)/.installed-test

# the R package's Python (see above): torch from the same pin, pymixnn editable, old numpy/pandas
VENV_R     := .venv-r
PY_R       := $(VENV_R)/bin/python
R_PIN_REQS := "numpy>=1.24,<2" "pandas>=2.0,<3"
R_PY_STAMP := $(VENV_R)/.installed-r-python

.PHONY: all venv venv-r install demo test test-all lint test-py test-r rpkg-install docs vignettes bench clean distclean

all: install

# --- environment -----------------------------------------------------------

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

venv: $(PY)

# compileall: the package's bytecode, as a wheel install writes it (an editable install compiles
# on import, and keeps nothing where PYTHONDONTWRITEBYTECODE is set)
$(CORE_STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet "$(TORCH_REQ)"
	$(PIP) install --quiet -e .
	$(PY) -m compileall -q pymixnn > /dev/null
	touch $@

install: $(CORE_STAMP)

$(R_APT_STAMP): | $(PY)
	@if command -v Rscript >/dev/null 2>&1 && dpkg -s $(R_APT_PKGS) >/dev/null 2>&1; then \
		echo "R and the Debian R packages are already installed"; \
	elif [ "$$(id -u)" -ne 0 ]; then \
		echo "error: R or some of these Debian packages are missing and installing them needs root:" >&2; \
		echo "  $(R_APT_PKGS)" >&2; \
		echo "Install them with apt-get as root, then rerun make." >&2; \
		exit 1; \
	else \
		set -e; \
		apt-get update; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(R_APT_PKGS); \
	fi
	touch $@

# numpy>=2 and pandas>=3 named here so that a .venv made under the old pins is upgraded too
$(TEST_STAMP): $(CORE_STAMP) $(R_APT_STAMP) pyproject.toml
	$(PIP) install --quiet -e ".[dev,r,docs]" "numpy>=2" "pandas>=3"
	touch $@

$(PY_R):
	$(PYTHON) -m venv $(VENV_R)
	$(PY_R) -m pip install --quiet --upgrade pip

$(R_PY_STAMP): pyproject.toml | $(PY_R)
	$(PY_R) -m pip install --quiet "$(TORCH_REQ)" $(R_PIN_REQS)
	$(PY_R) -m pip install --quiet -e . $(R_PIN_REQS)
	touch $@

venv-r: $(R_PY_STAMP)

# --- tasks -----------------------------------------------------------------

demo: $(CORE_STAMP)
	$(VENV)/bin/pymixnn demo

test: $(TEST_STAMP)
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-py
	$(MAKE) --no-print-directory test-r
	$(MAKE) --no-print-directory docs

# every test, the slow recovery fits included (make test runs each feature's fast checks)
test-all: $(TEST_STAMP)
	$(MAKE) --no-print-directory test PYTEST_MARK=

# ruff (pinned in the dev extra, configured in pyproject.toml): zero findings, formatted code
lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# two workers, one test file each at a time (module fixtures are computed once), one BLAS/OpenMP
# thread per process: on 2 cores more threads only contend (ENVIRONMENT.md: 80x slower steps)
# (PYTEST_MARK: make test leaves out the tests marked slow; make test-all empties it)
PYTEST_MARK ?= -m "not slow"
test-py: $(TEST_STAMP)
	PYMIXNN_EXPECT_NUMPY2=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15 $(PYTEST_MARK)

# The R package (rpkg/): R CMD build, then R CMD check (no PDF manual: no LaTeX here), whose
# testthat suite runs against .venv-r (PYMIXNN_REQUIRE_PYTHON=1: a missing Python
# fails instead of skipping); any ERROR or WARNING fails the target, NOTEs are listed. Then
# rpkg is installed into build/rlib and the README's R example runs as written.
RBUILD := build/rcheck
RLIB   := build/rlib
R_ENV  := RETICULATE_PYTHON=$(abspath $(PY_R)) PYMIXNN_REQUIRE_PYTHON=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

test-r: $(TEST_STAMP) $(R_PY_STAMP)
	rm -rf $(RBUILD) && mkdir -p $(RBUILD) $(RLIB)
	cd $(RBUILD) && R CMD build --no-build-vignettes $(CURDIR)/rpkg
	cd $(RBUILD) && $(R_ENV) R CMD check --no-manual pymixnn_*.tar.gz || \
		{ cat pymixnn.Rcheck/tests/testthat.Rout* 2>/dev/null | tail -n 60; exit 1; }
	@tail -n 8 $(RBUILD)/pymixnn.Rcheck/tests/testthat.Rout
	@status=$$(grep '^Status:' $(RBUILD)/pymixnn.Rcheck/00check.log); echo "R CMD check $$status"; \
		grep -B1 -A6 'NOTE$$' $(RBUILD)/pymixnn.Rcheck/00check.log || true; \
		case "$$status" in *WARNING*|*ERROR*) exit 1;; esac
	R CMD INSTALL --no-test-load -l $(RLIB) $(RBUILD)/pymixnn_*.tar.gz
	$(R_ENV) R_LIBS=$(abspath $(RLIB)) Rscript tests/r/readme_example.R README.md
	$(R_ENV) R_LIBS=$(abspath $(RLIB)) $(PY) vignettes/render.py --quick --out build/vignettes-quick 05_from_R

rpkg-install: $(TEST_STAMP) $(R_PY_STAMP)
	mkdir -p $(RLIB)
	R CMD INSTALL --no-test-load -l $(RLIB) rpkg

# The documentation site: Sphinx sources in vignettes/docs (conf.py, MyST Markdown guide pages, an
# API reference that autosummary generates from the numpydoc docstrings into vignettes/docs/generated,
# cleared first), HTML into build/docs, then the doctest builder runs every >>> example of the
# pages and of the documented docstrings (the getting-started fit of theophylline included). -W:
# any warning fails. The gallery links to each vignette's HTML, which conf.py copies from
# build/vignettes (make vignettes) when there, else from build/vignettes-quick (the quick renders
# that make test leaves: tests/test_vignettes.py for the Python ones, test-r for 05_from_R, which
# is why make test builds the docs last), else writes a page saying how to render it:
# no link is broken and make docs never renders a vignette itself. About 45 s on one core.
docs: $(TEST_STAMP)
	rm -rf vignettes/docs/generated build/docs build/docs-doctrees build/docs-doctest
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/sphinx-build -q -W --keep-going -b html \
		-d build/docs-doctrees vignettes/docs build/docs
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/sphinx-build -q -W --keep-going -b doctest \
		-d build/docs-doctrees vignettes/docs build/docs-doctest

# every vignette, full size, to build/vignettes/*.html (figures embedded); wall times in
# build/vignettes/render.json. The quick mode of each runs inside `make test`.
vignettes: rpkg-install
	R_LIBS=$(abspath $(RLIB)) RETICULATE_PYTHON=$(abspath $(PY_R)) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
		$(PY) vignettes/render.py --out build/vignettes

# the scaling/accuracy suite needs R (nlme from apt: the test stamp); saemix only where R_LIBS
# holds it (CRAN only), else its rows say skipped. It takes over an hour (one core, 10-min cap per fit).
bench: $(TEST_STAMP)
	$(PY) -m benchmarks.pipeline
	$(PY) -m benchmarks random_effects
	$(PY) -m benchmarks discrete
	$(PY) -m benchmarks genomic
	$(PY) -m benchmarks scaling

# --- cleaning --------------------------------------------------------------

clean:
	rm -rf build dist *.egg-info .pytest_cache rpkg.Rcheck .rlib vignettes/docs/generated
	rm -f rpkg/*.tar.gz
	find . \( -path ./$(VENV) -o -path ./$(VENV_R) \) -prune -o -type d -name __pycache__ -print0 | xargs -0 -r rm -rf

distclean: clean
	rm -rf $(VENV) $(VENV_R)
