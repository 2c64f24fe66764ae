//! Baselines from the warehouse (written in step 4).
