"""The three-tier suite (issue 4). A package so that its conftest never shadows
Tests/integration/conftest.py (whose tests import `conftest`) when both suites run in one pytest."""
