"""Web apps: start the built app in the sandbox, drive a browser and a load tool against it."""
