"""The wheel carries the default property files, so a non-editable install finds them."""

import subprocess
import sys
import zipfile


def test_wheel_contains_property_files(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    wheel = next(tmp_path.glob("recbole_msl-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ("recbole_msl/properties/overall.yaml", "recbole_msl/properties/model/LLMMSL.yaml",
                 "recbole_msl/properties/dataset/ml-100k.yaml", "recbole_msl/properties/dataset/ml-1m.yaml",
                 "recbole_msl/properties/dataset/amazon-books.yaml", "recbole_msl/properties/profiles/cpu.yaml",
                 "recbole_msl/model/llmmsl.py", "recbole_msl/trainer/llmmsl_trainer.py"):
        assert path in names
