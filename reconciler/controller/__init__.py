"""The long-running controller: its loop (`loop`), state store use, HTTP endpoints (`server`),
Prometheus metrics (`metrics`) and webhook notifications (`notify`)."""
