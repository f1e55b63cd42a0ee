//! End-to-end tests: start the real `osprey` binary and talk to it with real clients.
