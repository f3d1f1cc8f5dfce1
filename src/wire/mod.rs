//! The sans-IO wire codec (spec §2–4).
