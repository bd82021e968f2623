//! Consistent, parallel, resumable snapshot (in progress).
