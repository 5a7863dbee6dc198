"""ufd export: everything that needs torch (install ``ufd[export]``)."""
