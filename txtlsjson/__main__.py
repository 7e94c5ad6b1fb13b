"""
C{python -m txtlsjson}: the C{tlsjson} command.
"""

from txtlsjson.cli import main

main()
