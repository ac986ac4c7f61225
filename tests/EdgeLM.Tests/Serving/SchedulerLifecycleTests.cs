using System.Net.Http.Json;
using EdgeLM.Serving;

namespace EdgeLM.Tests.Serving;

[Collection(EdgeLM.Tests.Support.SerialCollection.Name)]
public class SchedulerLifecycleTests(ServingFixture fx) : IClassFixture<ServingFixture>
{
    [Fact]
    public async Task ClientThatDisconnectsCancelsItsSequenceAndFreesTheSlot()
    {
        // A seed whose answer does not end at once, so the sequence is still running when the client leaves.
        var options = new EdgeLM.Inference.GenerationOptions { MaxNewTokens = 10, Sampling = new() { Temperature = 1f, Seed = 0 } };
        ulong seed = Enumerable.Range(1, 200).Select(i => (ulong)i).First(s =>
            fx.Generate(fx.ChatPrompt(new EdgeLM.Tokenization.ChatMessage("user", "go on forever")), options with { Sampling = options.Sampling with { Seed = s } }).Result.GeneratedTokens == 10);
        var gate = new GatedStepper();
        await using var server = await fx.StartAsync(new ServerOptions { Port = 0, Parallel = 2, ContextLength = ServingFixture.Context, Threads = 1, Stepper = gate, ModelId = "tiny-serve" });
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(new { model = "tiny-serve", messages = new[] { new { role = "user", content = "go on forever" } }, stream = true, max_tokens = 10, temperature = 1, seed = seed }),
        };
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        var stream = await response.Content.ReadAsStreamAsync();
        var first = new byte[6];
        await stream.ReadExactlyAsync(first); // "data: " of the role chunk
        await Poll.UntilAsync(() => server.Scheduler.ActiveCount == 1, "the sequence is active");

        stream.Dispose();
        response.Dispose();
        http.CancelPendingRequests();
        await Poll.UntilAsync(() => server.Metrics.RequestCount("/v1/chat/completions", 200) == 1, "the server sees the disconnect");
        gate.Open();
        await Poll.UntilAsync(() => server.Scheduler.ActiveCount == 0, "the cancelled sequence leaves");
        Assert.Equal(1, server.Scheduler.CancelledTotal);
        Assert.True(server.Scheduler.GeneratedTokensTotal < 10, "it stopped before its budget");

        using var after = await http.PostAsJsonAsync("/v1/completions", new { model = "tiny-serve", prompt = "next", max_tokens = 3 });
        Assert.Equal(System.Net.HttpStatusCode.OK, after.StatusCode);
        Assert.True(server.Scheduler.SessionCount <= 2, "sessions are reused");
    }

    [Fact]
    public async Task HundredsOfShortAndCancelledRequestsKeepMemoryBounded()
    {
        await using var server = await fx.StartAsync(new ServerOptions { Port = 0, Parallel = 2, ContextLength = ServingFixture.Context, Threads = 1, ModelId = "tiny-serve" });
        using var http = new HttpClient { BaseAddress = server.BaseAddress };

        async Task Round(int i)
        {
            if (i % 2 == 0)
            {
                using var r = await http.PostAsJsonAsync("/v1/completions", new { model = "tiny-serve", prompt = $"p{i}", max_tokens = 3, seed = i });
                Assert.Equal(System.Net.HttpStatusCode.OK, r.StatusCode);
                return;
            }
            using var cancel = new CancellationTokenSource();
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
            {
                Content = JsonContent.Create(new { model = "tiny-serve", messages = new[] { new { role = "user", content = $"c{i}" } }, stream = true, max_tokens = 40, seed = i }),
            };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
            using var stream = await response.Content.ReadAsStreamAsync(cancel.Token);
            await stream.ReadExactlyAsync(new byte[6], cancel.Token);
            cancel.Cancel(); // abandon mid-stream
        }

        for (int i = 0; i < 20; i++) await Round(i);
        await Poll.UntilAsync(() => server.Scheduler.ActiveCount == 0, "warm-up sequences leave");
        long baseline = GcMemory();
        for (int i = 20; i < 220; i++) await Round(i);
        await Poll.UntilAsync(() => server.Scheduler.ActiveCount == 0 && server.Scheduler.QueueLength == 0, "every sequence leaves");
        long after = GcMemory();

        Assert.True(after - baseline < 16 << 20, $"managed memory grew by {(after - baseline) >> 10} KiB over 200 requests");
        Assert.True(server.Scheduler.SessionCount <= 2, $"{server.Scheduler.SessionCount} sessions for 2 slots: sessions are reused");
    }

    [Fact]
    public async Task IdleSchedulerFreesItsCachesAndAllocatesThemAgainOnDemand()
    {
        using var scheduler = new SequenceScheduler(fx.Model, fx.Tokenizer, parallel: 2, ServingFixture.Context, threads: 1, maxQueue: 8)
        {
            IdleCacheRelease = TimeSpan.FromMilliseconds(50),
        };
        var options = new EdgeLM.Inference.GenerationOptions { MaxNewTokens = 3, StopAtEndOfGeneration = false };
        var ids = fx.Tokenizer.Encode("hello there");
        await Task.WhenAll(scheduler.SubmitAsync(ids, options, _ => { }), scheduler.SubmitAsync(ids, options, _ => { }));
        await Poll.UntilAsync(() => scheduler.SessionCount == 0, "the idle scheduler frees both caches");

        int cachesWhileRunning = -1;
        var again = await scheduler.SubmitAsync(ids, options, _ => cachesWhileRunning = scheduler.SessionCount);
        Assert.Equal(3, again.GeneratedTokens);
        Assert.Equal(1, cachesWhileRunning);
    }

    private static long GcMemory()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return GC.GetTotalMemory(forceFullCollection: true);
    }
}

[Collection(EdgeLM.Tests.Support.SerialCollection.Name)]
public class BatchedSchedulingTests(ServingFixture fx) : IClassFixture<ServingFixture>
{
    [Fact]
    public async Task SequencesDecodeTogetherAndEachGetsItsOwnText()
    {
        var gate = new GatedStepper();
        using var scheduler = new SequenceScheduler(fx.Model, fx.Tokenizer, parallel: 3, ServingFixture.Context, threads: 1, maxQueue: 8, gate);
        Assert.Equal("batched", scheduler.BatchingMode);
        string[] prompts = ["one", "a longer second prompt to prefill", "3", "four joins when a slot frees"];
        var options = prompts.Select((_, i) => new EdgeLM.Inference.GenerationOptions
        {
            MaxNewTokens = i < 3 ? 20 : 4,
            StopAtEndOfGeneration = false,
            Sampling = new() { Temperature = 0.8f, Seed = (ulong)(7 + i) },
        }).ToArray();
        var texts = prompts.Select(_ => new System.Text.StringBuilder()).ToArray();
        var tasks = new Task<EdgeLM.Inference.GenerationResult>[prompts.Length];
        void Submit(int i)
        {
            var ids = fx.Tokenizer.Encode(fx.ChatPrompt(new EdgeLM.Tokenization.ChatMessage("user", prompts[i])));
            if (fx.Tokenizer.AddBos && fx.Tokenizer.BosId is int bos) ids = [bos, .. ids];
            var text = texts[i];
            tasks[i] = scheduler.SubmitAsync(ids, options[i], p => text.Append(p));
        }
        // The first request holds the gate with a step of its own; the next two join the batch after it, the last
        // when the first leaves.
        Submit(0);
        await Poll.UntilAsync(() => scheduler.ActiveCount == 1, "the first request runs");
        for (int i = 1; i < prompts.Length; i++) Submit(i);
        await Poll.UntilAsync(() => scheduler.QueueLength == 3, "three requests wait behind the first step");
        gate.Open();
        var results = await Task.WhenAll(tasks);

        for (int i = 0; i < prompts.Length; i++)
        {
            var expected = fx.Generate(fx.ChatPrompt(new EdgeLM.Tokenization.ChatMessage("user", prompts[i])), options[i]);
            Assert.Equal(expected.Text, texts[i].ToString());
            Assert.Equal(expected.Result.Tokens, results[i].Tokens);
        }
        Assert.Equal(3, scheduler.SessionCount); // the fourth request reused a freed cache
        // 24 steps, 64 sequence-steps: the first alone, then 20 steps of three, then the last alone for 3.
        Assert.True(scheduler.StepSequencesTotal > 2 * scheduler.StepsTotal,
            $"{scheduler.StepSequencesTotal} sequences over {scheduler.StepsTotal} steps: the sequences were not decoded together");
        Assert.True(scheduler.StepsTotal < results.Sum(r => r.GeneratedTokens), "fewer steps than tokens generated");
    }
}
