"""``python launch_runner.py FILE.launch.py name:=value ...``: what ``ros2 launch`` does once it has found the
file (ros2cli is not on PyPI): include the file with its arguments in a LaunchService and run it until
it ends or SIGINT."""
import sys

from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from launch import LaunchDescription, LaunchService


def main(argv: list[str]) -> int:
    path, *pairs = argv
    arguments = []
    for pair in pairs:
        name, sep, value = pair.partition(":=")
        if not sep:
            raise SystemExit(f"launch arguments take name:=value, got '{pair}'")
        arguments.append((name, value))
    service = LaunchService(argv=[])
    service.include_launch_description(LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=arguments)]))
    return service.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
