"""``python -m analysis RESULTS... -o report.html`` (the same as ``hrnas report``)."""

from analysis.cli import main

if __name__ == "__main__":
    main()
