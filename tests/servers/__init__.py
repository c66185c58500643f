"""Real PostgreSQL and Redis servers for the tests: `install.sh` installs them (Debian's packages),
`launch` starts and stops them, `plugin` gives the pytest fixtures."""
