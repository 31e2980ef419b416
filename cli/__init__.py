"""Command-line entry points (``tgjobs up``, ``workers``, ``status``, ``redis``) and the
embedded ``redis-server`` they start when no REDIS_URL is configured."""
