//! The command line's tests, one binary (one link): each runs the real `voxanne` executable.

mod audit;
mod newcomer;
mod shutdown;
mod worker_crash;
