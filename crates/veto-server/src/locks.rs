//! Locks over in-memory state that a panic cannot take out of service.
//!
//! Every writer of the maps behind these locks inserts, replaces or removes whole entries (or,
//! for a status list, sets bits through the registry's own methods), so a panic in another
//! request cannot leave them half-updated: a poisoned lock is taken as it is, and the node
//! keeps serving rather than failing every later request.
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
