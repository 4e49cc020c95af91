//! What every acquisition of one [`FifoLock`](super::FifoLock) shares: the
//! paths, the options, idle open files for the next acquisition, the holder
//! record template; and the removal of an idle queue file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::options::FifoOptions;
use crate::error::{Error, IoOp, Result};
use crate::holder::{self, Holders};
use crate::mode::Backend;
use crate::queue::{self, Kind, LinkCheck, QueueFile};
use crate::sys::{self, FileId, FileKind, OpenSpec};

/// What one acquisition uses, unlocked, kept for the next one: its own
/// open file descriptions of the lock file and the queue file (with the
/// queue header's mapping), the lock file's identity (asked once, not per
/// acquisition), and the holder record template with its mapping of the
/// lock file's head.
pub(crate) struct Idle {
    pub(super) main: Arc<File>,
    pub(super) main_id: FileId,
    pub(super) queue: QueueFile,
    pub(super) record: Option<holder::RecordTemplate>,
    /// The path check of the lock file (`verify_path`).
    pub(super) main_linked: LinkCheck,
}

impl Idle {
    pub(super) fn new(main: File, main_id: FileId, queue: File) -> Idle {
        Idle {
            main: Arc::new(main),
            main_id,
            queue: QueueFile::new(queue),
            record: None,
            main_linked: LinkCheck::default(),
        }
    }
}

pub(crate) struct FifoShared {
    pub(crate) path: PathBuf,
    pub(crate) queue_path: PathBuf,
    pub(super) opts: FifoOptions,
    /// Unlocked descriptions for the next acquisitions.
    pub(super) idle: Mutex<Vec<Idle>>,
    /// Set once the queue file was checked: only then may drop remove it.
    pub(super) opened: bool,
    /// Whether the lock file is a regular file we may write (a record).
    pub(super) writable: std::sync::atomic::AtomicBool,
}

const MAX_IDLE: usize = 4;

impl FifoShared {
    pub(crate) fn open(path: &Path, opts: FifoOptions) -> Result<Arc<FifoShared>> {
        if path.as_os_str().is_empty() {
            return Err(Error::InvalidInput {
                path: path.to_owned(),
                reason: "the lock path is empty".into(),
            });
        }
        if !sys::HAS_OFD {
            return Err(Error::Unsupported {
                path: path.to_owned(),
                what: "FIFO locks",
                reason:
                    "they need open-file-description byte-range locks, which exist only on Linux"
                        .into(),
            });
        }
        let queue_path = opts.queue_path.clone().unwrap_or_else(|| {
            let mut s = path.as_os_str().to_owned();
            s.push(".fifo");
            PathBuf::from(s)
        });
        let mut shared = FifoShared {
            path: path.to_owned(),
            queue_path,
            opts,
            idle: Mutex::new(Vec::new()),
            opened: false,
            writable: std::sync::atomic::AtomicBool::new(false),
        };
        let (main, main_id, kind) = shared.open_main_kind()?;
        shared.writable.store(
            kind == FileKind::Writable,
            std::sync::atomic::Ordering::Relaxed,
        );
        if shared.opts.create_parents
            && let Some(parent) = shared
                .queue_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(IoOp::CreateParents, &shared.queue_path, e))?;
        }
        let q = queue::open_queue(&shared.queue_path, shared.opts.permissions)?;
        queue::check_on_open(&q, &shared.queue_path, Kind::Fifo)?;
        shared.put_idle(Idle::new(main, main_id, q));
        shared.opened = true;
        Ok(Arc::new(shared))
    }

    pub(super) fn open_main(&self) -> Result<(File, FileId)> {
        self.open_main_kind().map(|(f, id, _)| (f, id))
    }

    pub(super) fn open_main_kind(&self) -> Result<(File, FileId, FileKind)> {
        let spec = OpenSpec {
            mode: self.opts.permissions,
            create: true,
            follow_symlinks: self.opts.follow_symlinks,
        };
        let path = &self.path;
        let opened = match sys::open_lock_file(path, &spec) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.opts.create_parents => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io(IoOp::CreateParents, path, e))?;
                }
                sys::open_lock_file(path, &spec)
            }
            other => other,
        };
        let (file, kind) = opened.map_err(|e| {
            if !self.opts.follow_symlinks
                && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
            {
                Error::Symlink { path: path.clone() }
            } else {
                Error::io(IoOp::Open, path, e)
            }
        })?;
        if self.opts.backend == Backend::OfdFcntl && kind == FileKind::Other {
            return Err(Error::Unsupported {
                path: path.clone(),
                what: "fcntl locks on a directory",
                reason: "they need a file opened for writing; use Backend::Flock".into(),
            });
        }
        let id = sys::file_id(&file).map_err(|e| Error::io(IoOp::Inspect, path, e))?;
        Ok((file, id, kind))
    }

    pub(super) fn take_idle(&self) -> Option<Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    pub(super) fn put_idle(&self, one: Idle) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(one);
        }
    }

    pub(crate) fn holders(&self) -> Holders {
        match self.open_main() {
            Ok((f, id)) => holder::describe(Some(&f), id),
            Err(_) => Holders::new(),
        }
    }
}

impl Drop for FifoShared {
    fn drop(&mut self) {
        if !self.opts.remove_when_idle || !self.opened {
            return;
        }
        let q = match self.take_idle() {
            Some(idle) => Ok(idle.queue.file),
            None => queue::open_queue(&self.queue_path, self.opts.permissions),
        };
        if let Ok(q) = q
            && let Err(e) = queue::remove_if_idle(&q, &self.queue_path)
        {
            tracing::debug!(path = %self.queue_path.display(), error = %e, "could not remove the idle queue file");
        }
    }
}
