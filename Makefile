# make demo | make test | make bench (GPU)  -- each creates .venv when missing (torch first, then the project)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
DEMO_POLICIES ?= full,streaming_llm,streaming_heads,quest,lserve,alisa_swa,h2o,snapkv,pyramidkv
DEMO_OUT ?= outputs/demo
DEMO_LENGTHS ?= [2048,4096]

TESTBED_OUT ?= outputs/testbed_eval
RULER_SAMPLES ?= 50

.PHONY: install demo test bench testbed-eval clean

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
	$(BIN)/sparsebench -m policy=$(DEMO_POLICIES) task=needle "task.lengths=$(DEMO_LENGTHS)" paths.output_dir=$(DEMO_OUT)
	$(BIN)/sparsebench-report $(DEMO_OUT)

# pytest exit code 5 (no tests collected) is a failure too
test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# attention benchmark (needs a CUDA device): every policy on flex and triton vs dense cuDNN
bench: $(STAMP)
	$(BIN)/sparsebench task=latency_attention paths.output_dir=outputs/bench

# docs/testbed.md's acceptance table: the testbed model on the CPU through the eval CLI (~15 min on 2 cores)
testbed-eval: $(STAMP)
	$(BIN)/sparsebench policy=full task=needle "task.lengths=[1024,2048,4096,8192]" "task.depths=[0,25,50,75,100]" paths.output_dir=$(TESTBED_OUT)
	$(BIN)/sparsebench task=ruler "task.tasks=[niah_single_1,niah_multikey_2,vt]" "task.lengths=[4096]" task.num_samples=$(RULER_SAMPLES) paths.output_dir=$(TESTBED_OUT)
	$(BIN)/sparsebench policy=streaming_llm policy.sink=4 policy.window=256 backend=reference "task.lengths=[4096,8192]" "task.depths=[0,25,50,75]" paths.output_dir=$(TESTBED_OUT)
	$(BIN)/sparsebench -m policy=quest,lserve policy.budget=512 backend=reference "task.lengths=[4096,8192]" "task.depths=[0,25,50,75,100]" paths.output_dir=$(TESTBED_OUT)
	$(BIN)/sparsebench policy=streaming_heads policy.sparsity=0.5 backend=reference "task.lengths=[4096]" "task.depths=[0,25,50,75,100]" paths.output_dir=$(TESTBED_OUT)
	$(BIN)/sparsebench policy=full backend=reference "task.lengths=[4096]" "task.depths=[0,50,100]" paths.output_dir=$(TESTBED_OUT)/timing
	$(BIN)/sparsebench-report $(TESTBED_OUT)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
