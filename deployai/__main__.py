"""`python -m deployai`: the `deployai` command (see `deployai._cli`)."""

from ._cli import main_exit

if __name__ == "__main__":
    main_exit()
