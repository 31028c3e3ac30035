"""python -m swat_edge: the same CLI as the swat-edge command."""
from .cli import main

if __name__ == "__main__":  # spawned worker processes import this module as __mp_main__
    main()
