"""The template's entry point (server.main) with the tests' routes: run as a process by
test_service_shutdown.py, to send it real signals."""

from service_testing import TEST_ROUTERS

from service_template.server import main

main(TEST_ROUTERS)
