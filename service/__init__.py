"""capvid: the aiohttp service (handlers, auth, errors, SQL, storage)."""
