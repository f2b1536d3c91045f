from omokage.cli import main

if __name__ == "__main__":   # only as `python -m omokage`, not when imported
    raise SystemExit(main())
