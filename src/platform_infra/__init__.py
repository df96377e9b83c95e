"""The Pulumi program's parts: typed stack settings, one ComponentResource per concern, and
the policy rules that both the tests and the CrossGuard pack in ``infra/policy`` apply.

``infra/__main__.py`` only wires these together; everything here can be imported and tested
without the Pulumi engine (the components under ``pulumi.runtime.set_mocks``).
"""
