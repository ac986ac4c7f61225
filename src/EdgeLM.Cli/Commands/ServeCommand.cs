using EdgeLM.Serving;

namespace EdgeLM.Cli.Commands;

internal sealed class ServeCommand : Command
{
    public override string Name => "serve";
    public override string Summary => "OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, /metrics)";
    public override string Usage => "edgelm serve -m MODEL [--host 127.0.0.1] [--port 8080] [--parallel N] [--ctx N] [--api-key KEY] [--no-think] [-t THREADS]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelOptions.Model,
        new("--host", null, "ADDR", "address to listen on; anything but loopback exposes the server to the network", "127.0.0.1"),
        new("--port", null, "N", "TCP port (0 picks a free one)", "8080"),
        new("--parallel", "-np", "N", "sequences decoded together in one batch (each with its own KV cache); the others wait in the queue", "4"),
        new("--max-queue", null, "N", "requests that may wait before new ones are refused with 429", "64"),
        new("--api-key", null, "KEY", "require 'Authorization: Bearer KEY' on /v1/* (or set EDGELM_API_KEY)"),
        new("--model-id", null, "NAME", "model name served by /v1/models", "the model file's name"),
        new("--no-think", null, null, "Qwen3: answer without thinking unless a request sets chat_template_kwargs.enable_thinking (ignored by templates without the switch)"),
        ModelOptions.Threads, ModelOptions.Context, ModelOptions.Tokenizer,
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        var options = new ServerOptions
        {
            Host = a.Get("--host") ?? "127.0.0.1",
            Port = a.Int("--port", 8080, 0, 65535),
            Parallel = a.Int("--parallel", 4, 1, 256),
            MaxQueue = a.Int("--max-queue", 64, 0, 100_000),
            ApiKey = a.Get("--api-key") ?? Environment.GetEnvironmentVariable("EDGELM_API_KEY"),
            ModelId = a.Get("--model-id"),
            EnableThinking = !a.Flag("--no-think"),
            Threads = ModelOptions.ThreadCount(a),
        };
        using var model = ModelOptions.Load(a);
        var tokenizer = ModelOptions.LoadTokenizer(model, a);
        options = options with { ContextLength = a.Int("--ctx", Math.Min(model.Config.ContextLength, 4096), 2, model.Config.ContextLength) };
        return RunAsync(model, tokenizer, options, cancel).GetAwaiter().GetResult();
    }

    private static async Task<int> RunAsync(Models.LoadedModel model, Tokenization.BpeTokenizer tokenizer, ServerOptions options, CancellationToken cancel)
    {
        await using var server = new EdgeLmServer(model, tokenizer, options);
        await server.StartAsync(cancel);
        var s = server.Scheduler;
        Console.Error.WriteLine($"edgelm serve: {server.ModelId} on {server.BaseAddress} | {s.Parallel} parallel sequences x {s.ContextLength} tokens, " +
            $"{s.ThreadCount} threads, batching: {s.BatchingMode}{(options.ApiKey != null ? ", API key required" : "")}");
        // Ends on Ctrl+C (cancel) or SIGTERM (the host's console lifetime stops the application).
        try { await server.WaitForShutdownAsync(cancel); }
        catch (OperationCanceledException) { }
        Console.Error.WriteLine("edgelm serve: stopping");
        return 0;
    }
}
