//! The PartitionPolicy API.
