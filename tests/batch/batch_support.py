"""What the batch tests share: a short schedule and the CLI run in process."""

from __future__ import annotations

from brushwork.commands import main

FAST = ["--size", "32", "--iterations", "4", "--multiscale", "off", "--seed", "3"]
FAST_OPTIONS = {"size": 32, "iterations": 4, "multiscale": "off", "seed": 3}


def cli_run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
