"""Parts the shipped benchmarks share (not benchmarks themselves): a zero-cost engine, a
loopback load generator, the miner app as the benchmarks serve it, an event-loop watcher."""
