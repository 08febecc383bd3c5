//! What one plugin instance may allocate: memory (over all its memories), tables, instances.

/// Memory, table and instance caps for one plugin instance. The memory cap is on the sum of
/// its memories (a component may have several). Records whether the cap was hit so a trap
/// can be reported as what it was.
pub struct Limiter {
    pub memory_max: usize,
    pub memory_exceeded: bool,
    /// Bytes of linear memory the instance has, over all its memories.
    pub memory_used: usize,
}

impl Limiter {
    pub fn new(memory_max: usize) -> Limiter {
        Limiter {
            memory_max,
            memory_exceeded: false,
            memory_used: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // instantiation asks too (current 0): initial memories count
        let total = (self.memory_used.saturating_sub(current)).saturating_add(desired);
        if total > self.memory_max {
            self.memory_exceeded = true;
            wasmtime::bail!("plugin memory limit of {} bytes reached", self.memory_max);
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        32
    }
    fn tables(&self) -> usize {
        32
    }
    fn memories(&self) -> usize {
        8
    }
}
