import multiproc
import pytest


@pytest.fixture(params=["fork", "spawn"])
def ctx(request):
    """Our context, once per start method."""
    return multiproc.get_context(request.param)
