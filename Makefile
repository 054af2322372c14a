# make demo | make test  -- each creates .venv when missing (torch first, then the project)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
DEMO_POLICIES ?= full,streaming_llm,streaming_heads,quest,lserve,alisa_swa,h2o,snapkv,pyramidkv
DEMO_OUT ?= outputs/demo

.PHONY: install demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first: a looser requirement resolved with no torch present would pull a CUDA build
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sparsebench -m policy=$(DEMO_POLICIES) task=needle paths.output_dir=$(DEMO_OUT)
	$(BIN)/sparsebench-report $(DEMO_OUT)

# pytest exit code 5 (no tests collected) is a failure too
test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
