"""Train and evaluate LLMMSL or any RecBole model, like RecBole's run_recbole.py.

    python run_recbole_msl.py --model=LLMMSL --dataset=ml-100k --config_files=properties/profiles/cpu.yaml
    python run_recbole_msl.py --model=SASRec --dataset=ml-100k
    python run_recbole_msl.py recommend --checkpoint=saved/LLMMSL-... --history=1,50,172

The same as the installed ``recbole-msl`` command (``recbole-msl --help``).
"""

import sys

from recbole_msl.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="run_recbole_msl.py"))
