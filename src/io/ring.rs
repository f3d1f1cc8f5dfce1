//! Ring creation with the required setup flags, the feature probe, and the `user_data`
//! encoding of every operation.

use io_uring::{IoUring, Probe, opcode};

use super::IoError;
use super::bufring::BufRing;

/// Creates a ring with `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN | SUBMIT_ALL` on the
/// calling thread (which becomes its only submitter) and checks every feature the shard uses.
/// `DEFER_TASKRUN` needs kernel 6.1, which also has everything else used here (multishot
/// accept 5.19, multishot receive 6.0, provided buffer rings 5.19); the opcodes and feature
/// bits are still probed so a restricted kernel is named precisely.
pub(crate) fn new_ring(sq_entries: u32) -> Result<IoUring, IoError> {
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_submit_all()
        .setup_cqsize(sq_entries * 4)
        .build(sq_entries)
        .map_err(setup_error)?;
    check_features(&ring)?;
    Ok(ring)
}

/// Maps an `io_uring_setup` failure to the feature that is missing.
fn setup_error(e: std::io::Error) -> IoError {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => IoError::Unsupported {
            feature: "io_uring",
            reason: format!(
                "io_uring_setup: {e} (a kernel built without io_uring, or a seccomp/container \
                 policy that makes the call fail with ENOSYS)"
            ),
        },
        Some(libc::EPERM) | Some(libc::EACCES) => IoError::Unsupported {
            feature: "io_uring",
            reason: format!(
                "io_uring_setup: {e}; kernel.io_uring_disabled = {} (0 allows it), or a \
                 seccomp/container policy blocks it",
                std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "unknown".into())
            ),
        },
        Some(libc::EINVAL) => {
            // Tell "no io_uring flags support" from "no io_uring" with a plain ring.
            if IoUring::new(8).is_ok() {
                IoError::Unsupported {
                    feature: "IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (kernel ≥ 6.1)",
                    reason: format!("io_uring_setup: {e}"),
                }
            } else {
                IoError::Unsupported {
                    feature: "io_uring",
                    reason: format!("io_uring_setup: {e}"),
                }
            }
        }
        Some(libc::ENOMEM) => IoError::RingMemory {
            source: e,
            soft_limit: match super::sys::locked_memory_limit() {
                Ok((u64::MAX, _)) => "unlimited".into(),
                Ok((soft, _)) => format!("{} KiB", soft / 1024),
                Err(_) => "unknown".into(),
            },
        },
        _ => IoError::Setup {
            what: "io_uring_setup",
            source: e,
        },
    }
}

fn check_features(ring: &IoUring) -> Result<(), IoError> {
    let p = ring.params();
    let features: [(bool, &'static str); 4] = [
        (p.is_feature_nodrop(), "IORING_FEAT_NODROP"),
        (p.is_feature_fast_poll(), "IORING_FEAT_FAST_POLL"),
        (p.is_feature_ext_arg(), "IORING_FEAT_EXT_ARG"),
        (p.is_feature_submit_stable(), "IORING_FEAT_SUBMIT_STABLE"),
    ];
    for (ok, feature) in features {
        if !ok {
            return Err(IoError::Unsupported {
                feature,
                reason: "not in io_uring_params.features".into(),
            });
        }
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| IoError::Unsupported {
            feature: "IORING_REGISTER_PROBE",
            reason: e.to_string(),
        })?;
    let ops: [(u8, &'static str); 9] = [
        (opcode::AcceptMulti::CODE, "IORING_OP_ACCEPT"),
        (opcode::RecvMulti::CODE, "IORING_OP_RECV"),
        (opcode::Send::CODE, "IORING_OP_SEND"),
        (opcode::Connect::CODE, "IORING_OP_CONNECT"),
        (opcode::LinkTimeout::CODE, "IORING_OP_LINK_TIMEOUT"),
        (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
        (opcode::Close::CODE, "IORING_OP_CLOSE"),
        (opcode::Read::CODE, "IORING_OP_READ"),
        // Present since 6.0, the release that brought multishot receive.
        (
            opcode::SendZc::CODE,
            "IORING_OP_SEND_ZC (kernel ≥ 6.0, multishot receive)",
        ),
    ];
    for (code, feature) in ops {
        if !probe.is_supported(code) {
            return Err(IoError::Unsupported {
                feature,
                reason: "opcode not supported by the kernel".into(),
            });
        }
    }
    Ok(())
}

/// Checks, on the calling thread, that this kernel supports everything a shard needs: the ring
/// setup flags, the opcodes and a provided buffer ring. A shard runs the same checks at start.
pub fn probe() -> Result<(), IoError> {
    let ring = new_ring(8)?;
    let bufs = BufRing::new(&ring, 0, 1, 64)?;
    drop(ring);
    drop(bufs);
    Ok(())
}

/// The kind of operation a completion belongs to (the top byte of `user_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    Accept = 1,
    Wake = 2,
    Recv = 3,
    Send = 4,
    Connect = 5,
    LinkTimeout = 6,
    Cancel = 7,
    Close = 8,
}

/// `user_data` = op (8 bits) | generation (low 24 bits) | slot index (32 bits). A slot is only
/// reused after all its operations completed, so (op, index, generation) is unique in flight.
pub(crate) fn encode(op: Op, idx: u32, generation: u32) -> u64 {
    (op as u64) << 56 | u64::from(generation & 0xff_ffff) << 32 | u64::from(idx)
}

/// Inverse of [`encode`]; `None` for a value we never submitted.
pub(crate) fn decode(user_data: u64) -> Option<(Op, u32, u32)> {
    let op = match (user_data >> 56) as u8 {
        1 => Op::Accept,
        2 => Op::Wake,
        3 => Op::Recv,
        4 => Op::Send,
        5 => Op::Connect,
        6 => Op::LinkTimeout,
        7 => Op::Cancel,
        8 => Op::Close,
        _ => return None,
    };
    Some((op, user_data as u32, (user_data >> 32) as u32 & 0xff_ffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        for op in [
            Op::Accept,
            Op::Wake,
            Op::Recv,
            Op::Send,
            Op::Connect,
            Op::LinkTimeout,
            Op::Cancel,
            Op::Close,
        ] {
            for (idx, g) in [(0, 0), (u32::MAX, 0xff_ffff), (12345, 0x1_000_001)] {
                assert_eq!(decode(encode(op, idx, g)), Some((op, idx, g & 0xff_ffff)));
            }
        }
        assert_eq!(decode(0), None);
        assert_eq!(decode(0xff << 56), None);
    }

    #[test]
    fn setup_errors_name_the_feature() {
        let e = setup_error(std::io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(matches!(
            e,
            IoError::Unsupported {
                feature: "io_uring",
                ..
            }
        ));
        let e = setup_error(std::io::Error::from_raw_os_error(libc::EPERM));
        assert!(
            matches!(
                e,
                IoError::Unsupported {
                    feature: "io_uring",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("io_uring_disabled"));
        let e = setup_error(std::io::Error::from_raw_os_error(libc::ENOMEM));
        assert!(matches!(e, IoError::RingMemory { .. }), "{e}");
        assert!(e.to_string().contains("LimitMEMLOCK"), "{e}");
        let e = setup_error(std::io::Error::from_raw_os_error(libc::EBADF));
        assert!(matches!(
            e,
            IoError::Setup {
                what: "io_uring_setup",
                ..
            }
        ));
    }

    #[test]
    fn this_kernel_has_everything() {
        probe().unwrap();
    }
}
