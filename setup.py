"""ament_python package `momask_ros`; also installs with plain `pip install -e .`."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "momask_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={
        "momask_model": ["data/skeletons/*.yaml", "assets/*"],
        "momask_ros": ["robot/profiles/*.xml", "robot/profiles/*.yaml", "tracker/*.yaml"],
    },
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=["numpy", "scipy", "pyyaml", "tqdm", "torch"],
    zip_safe=True,
    maintainer="momask_ros maintainers",
    maintainer_email="maintainers@momask-ros.dev",
    description="Text to humanoid robot motion with MoMask, as a ROS 2 package.",
    license="MIT",
    extras_require={"test": ["pytest", "rosbags"]},
    entry_points={
        "console_scripts": [
            "momask-generate = momask_model.cli.main:generate_main",
            "momask-import-official = momask_model.cli.main:import_official_main",
            "momask-bench = momask_model.cli.main:bench_main",
            "momask-robot-check = momask_ros.tools.robot_check:main",
            "momask_node = momask_ros.ros.node:main",
            "momask_sim = momask_ros.ros.sim_node:main",
            "momask-check = momask_ros.tools.check:main",
            "momask-fetch-tracker = momask_ros.tracker.fetch:main",
            "momask_tracker = momask_ros.ros.tracker_node:main",
            "momask-track = momask_ros.tools.track:main",
        ],
        # momask-generate --mcap: the robot stream is written by momask_ros, found by momask_model at run time
        "momask_model.robot_stream_writers": ["mcap = momask_ros.ros.recording:write_generation_mcap"],
    },
)
