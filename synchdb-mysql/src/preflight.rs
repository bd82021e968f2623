//! Preflight checks of the source server (in progress).
