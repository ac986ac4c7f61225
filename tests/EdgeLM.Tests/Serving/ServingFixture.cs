using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Serving;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;
using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Serving;

/// <summary>A tiny synthetic model (byte-level tokenizer) loaded once, and a server over it on a free loopback port.</summary>
public sealed class ServingFixture : IAsyncLifetime
{
    public const int Context = 256;
    public static ModelConfig Config { get; } = ModelPresets.Get("tiny") with { VocabSize = 512, ContextLength = Context };

    public string Dir { get; } = TestPaths.NewTempDir();
    public string GgufPath => Path.Combine(Dir, "tiny-serve.gguf");
    public LoadedModel Model { get; private set; } = null!;
    public BpeTokenizer Tokenizer { get; private set; } = null!;
    public EdgeLmServer Server { get; private set; } = null!;
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromMinutes(2) };

    public async Task InitializeAsync()
    {
        SyntheticModel.WriteGguf(GgufPath, Config, GgmlType.F16, seed: 11, tokenizer: null);
        Model = ModelLoader.Load(GgufPath);
        Tokenizer = ModelTokenizers.Require(Model);
        Server = await StartAsync(new ServerOptions { Port = 0, Parallel = 4, ContextLength = Context, Threads = 1 });
        Http.BaseAddress = Server.BaseAddress;
    }

    public async Task<EdgeLmServer> StartAsync(ServerOptions options)
    {
        var server = new EdgeLmServer(Model, Tokenizer, options);
        await server.StartAsync();
        return server;
    }

    /// <summary>What a single in-process Generator call produces: the reference every served answer must equal.</summary>
    public (string Text, GenerationResult Result) Generate(string prompt, GenerationOptions options)
    {
        var ids = Tokenizer.Encode(prompt);
        if (Tokenizer.AddBos && Tokenizer.BosId is int bos) ids = [bos, .. ids];
        using var session = new InferenceSession(Model.Config, Model.Weights, Context, threads: 1);
        var text = new System.Text.StringBuilder();
        var result = new Generator(session, Tokenizer).Generate(ids, options, p => text.Append(p));
        return (text.ToString(), result);
    }

    public string ChatPrompt(params ChatMessage[] messages) => ChatFormat.Render(Tokenizer, messages, addGenerationPrompt: true);

    public async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        Http.Dispose();
        Model.Dispose();
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Blocks every step until the test opens it: makes "still running" and "still queued" deterministic.</summary>
public sealed class GatedStepper : ISequenceStepper
{
    private readonly ManualResetEventSlim _open = new(false);
    private readonly BatchedStepper _inner = new();
    public string Mode => _inner.Mode;
    public void Open() => _open.Set();
    public int Step(BatchedSession batch, IReadOnlyList<GenerationSequence> sequences)
    {
        _open.Wait();
        return _inner.Step(batch, sequences);
    }
}

public static class Poll
{
    /// <summary>Waits for a condition with a generous bound: a failure means "never", not "too slow".</summary>
    public static async Task UntilAsync(Func<bool> condition, string what)
    {
        for (int i = 0; i < 3000; i++)
        {
            if (condition()) return;
            await Task.Delay(10);
        }
        Assert.Fail("never happened: " + what);
    }
}
