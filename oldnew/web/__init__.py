"""oldnew's web stack: the tools, the app's start, the web gates' driver and the preview."""
