using EdgeLM.Kernels;

namespace EdgeLM.Tests.Kernels;

[Trait("Category", "Kernels")]
public class WorkerPoolTests
{
    private sealed class CountingJob(int count) : IRangeJob
    {
        public readonly int[] Hits = new int[count];
        public readonly int[] WorkerOf = new int[count];
        public void Execute(int begin, int end, int worker)
        {
            for (int i = begin; i < end; i++) { Interlocked.Increment(ref Hits[i]); WorkerOf[i] = worker; }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void EveryItemRunsExactlyOnce(int threads)
    {
        using var pool = new WorkerPool(threads);
        Assert.Equal(threads, pool.ThreadCount);
        foreach (int count in new[] { 1, 2, 7, 100, 1000 })
            foreach (int grain in new[] { 1, 3, 64 })
                for (int repeat = 0; repeat < 20; repeat++)
                {
                    var job = new CountingJob(count);
                    pool.Run(job, count, grain);
                    Assert.All(job.Hits, h => Assert.Equal(1, h));
                    Assert.All(job.WorkerOf, w => Assert.InRange(w, 0, threads - 1));
                }
    }

    [Theory]
    [InlineData((1 << 19) - 3)] // the claim word's top bit becomes set
    [InlineData((1 << 20) - 3)] // its generation field wraps to 0
    [InlineData(int.MaxValue - 3)] // the generation counter itself wraps
    public async Task JobsRunAcrossGenerationBoundaries(int start)
    {
        using var pool = new WorkerPool(2);
        pool.SetGenerationForTests(start);
        // A job that hangs would hang the test run: run them on another thread and give up after a generous time.
        var run = Task.Run(() =>
        {
            for (int repeat = 0; repeat < 8; repeat++)
            {
                var job = new CountingJob(100);
                pool.RunGuided(job, 100, 1, repeat % 2 == 0 ? 0 : 10);
                Assert.All(job.Hits, h => Assert.Equal(1, h));
            }
        });
        await run.WaitAsync(TimeSpan.FromSeconds(30)); // TimeoutException: the jobs hung
    }

    private sealed class ThrowingJob : IRangeJob
    {
        public void Execute(int begin, int end, int worker)
        {
            if (begin <= 50 && 50 < end) throw new InvalidOperationException("item 50");
        }
    }

    [Fact]
    public void ExceptionsReachTheCallerAndThePoolKeepsWorking()
    {
        using var pool = new WorkerPool(2);
        var error = Assert.Throws<InvalidOperationException>(() => pool.Run(new ThrowingJob(), 100, 1));
        Assert.Equal("item 50", error.Message);
        var job = new CountingJob(100);
        pool.Run(job, 100, 1);
        Assert.All(job.Hits, h => Assert.Equal(1, h));
    }

    [Fact]
    public void DefaultsToProcessorCountAndRejectsBadCounts()
    {
        using (var pool = new WorkerPool()) Assert.Equal(Environment.ProcessorCount, pool.ThreadCount);
        Assert.Throws<ArgumentOutOfRangeException>(() => new WorkerPool(-1));
        var disposed = new WorkerPool(2);
        disposed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => disposed.Run(new CountingJob(4), 4));
    }

    [Fact]
    public void WorkersSleepAndWakeBetweenJobs()
    {
        using var pool = new WorkerPool(2);
        var job = new CountingJob(64);
        pool.Run(job, 64, 1);
        Thread.Sleep(50); // long enough for the workers to stop spinning and block
        pool.Run(job, 64, 1);
        Assert.All(job.Hits, h => Assert.Equal(2, h));
    }
}

[Trait("Category", "Kernels")]
public class WorkerPoolStaleWorkerTests
{
    private sealed class TaggedJob(int count) : IRangeJob
    {
        public readonly int[] Hits = new int[count];
        public void Execute(int begin, int end, int worker)
        {
            for (int i = begin; i < end; i++) Interlocked.Increment(ref Hits[i]);
        }
    }

    [Fact]
    public void BackToBackJobsOfDifferentSizesNeverShareOrLoseItems()
    {
        // More threads than cores: workers are often descheduled mid-job and wake after the caller has moved on.
        using var pool = new WorkerPool(3);
        var small = new TaggedJob(5);
        var large = new TaggedJob(300);
        for (int round = 1; round <= 500; round++)
        {
            pool.Run(small, 5, 1);
            pool.Run(large, 300, 7);
            Assert.All(small.Hits, h => Assert.Equal(round, h));
            Assert.All(large.Hits, h => Assert.Equal(round, h));
        }
    }
}

public class WorkerPoolCompletionTests
{
    /// <summary>Counts executed items; some items are slow enough that the caller stops spinning and sleeps.</summary>
    private sealed class CountingJob : EdgeLM.Kernels.IRangeJob
    {
        public int Done;
        public int SlowEvery;
        public void Execute(int begin, int end, int worker)
        {
            for (int i = begin; i < end; i++)
            {
                if (SlowEvery > 0 && i % SlowEvery == 0) Thread.Sleep(2); // past the pool's 1 ms spin
                Interlocked.Increment(ref Done);
            }
        }
    }

    [Fact]
    [Trait("Category", "Kernels")]
    public void RunReturnsOnlyAfterEveryItemOfThisJobRan()
    {
        // Regression: a late completion signal from the previous job once let Run return while a worker was still
        // executing the next one (the next matmul then reused its buffers: an access violation).
        using var pool = new EdgeLM.Kernels.WorkerPool(3);
        var random = new Random(5);
        var job = new CountingJob();
        for (int round = 0; round < 400; round++)
        {
            int count = random.Next(2, 40);
            job.Done = 0;
            job.SlowEvery = round % 7 == 0 ? random.Next(1, count) : 0;
            pool.Run(job, count, grain: 1);
            Assert.Equal(count, Volatile.Read(ref job.Done));
        }
    }
}
