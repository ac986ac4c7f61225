using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Synthetic;
using EdgeLM.Tokenization;

namespace EdgeLM.Cli.Commands;

/// <summary>The main job of the README: make a synthetic Qwen2.5-0.5B (cached), load it and generate text.</summary>
internal sealed class DemoCommand : Command
{
    public override string Name => "demo";
    public override string Summary => "make a synthetic Qwen2.5-0.5B-shaped model (cached) and generate text with it";
    public override string Usage => "edgelm demo [--preset NAME] [--type f16] [-p PROMPT] [-n N] [-t THREADS] [--dir DIR]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--preset", null, "NAME", $"architecture: {string.Join(", ", ModelPresets.Names)}", "qwen2.5-0.5b"),
        new("--type", null, "TYPE", "weight type: f32, f16 or bf16", "f16"),
        new("--prompt", "-p", "TEXT", "user message", "\"Give me a short introduction to large language models.\""),
        new("--n-predict", "-n", "N", "tokens to generate", "48"),
        new("--seed", "-s", "N", "sampling seed", "42"),
        new("--dir", null, "DIR", "where the synthetic model is kept", "~/.cache/edgelm"),
        ModelOptions.Threads, ModelOptions.Tokenizer,
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        string preset = a.Get("--preset") ?? "qwen2.5-0.5b";
        var type = SynthCommand.ParseType(a.Get("--type") ?? "f16");
        ModelConfig config;
        try { config = ModelPresets.Get(preset); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        string prompt = a.Get("--prompt") ?? "Give me a short introduction to large language models.";
        int n = a.Int("--n-predict", 48, 1);
        int threads = ModelOptions.ThreadCount(a);

        string? tokenizerPath = a.Get("--tokenizer") ?? Locations.QwenTokenizer;
        string dir = a.Get("--dir") ?? Locations.CacheFolder;
        Directory.CreateDirectory(dir);
        string file = Path.Combine(dir, $"synthetic-{preset}-{type.ToString().ToLowerInvariant()}-seed1{(tokenizerPath != null ? "-qwentok" : "")}.gguf");

        var err = Console.Error;
        err.WriteLine($"EdgeLM {Program.Version} demo: {config.Name}, {SyntheticModel.ParameterCount(config):N0} parameters, {type}");
        err.WriteLine(tokenizerPath != null ? $"tokenizer: {tokenizerPath}" : "tokenizer: byte-level fallback (../shared/tokenizers/qwen not found)");
        if (!File.Exists(file))
        {
            err.WriteLine($"writing {file} (random weights, exact shapes) ...");
            var tok = tokenizerPath != null ? BpeTokenizer.FromTokenizerJson(tokenizerPath) : null;
            SyntheticModel.WriteGguf(file, config, type, seed: 1, tok, new ConsoleProgress("synth"));
        }
        else err.WriteLine($"using cached {file}");

        using var model = ModelLoader.Load(file);
        var tokenizer = ModelTokenizers.Require(model);
        err.WriteLine($"loaded: {model.Tensors.Count} tensors, {model.FileBytes / 1e6:F0} MB memory-mapped, {threads} threads");

        string chat = ChatFormat.Render(tokenizer, [new ChatMessage("user", prompt)], addGenerationPrompt: true);
        int[] ids = tokenizer.Encode(chat);
        using var session = new InferenceSession(model.Config, model.Weights, Math.Min(model.Config.ContextLength, ids.Length + n + 16), threads);
        var generator = new Generator(session, tokenizer);
        var options = new GenerationOptions
        {
            MaxNewTokens = n,
            StopAtEndOfGeneration = false, // random weights: show the requested number of tokens
            Sampling = new SamplingOptions { Temperature = 0.8f, TopK = 40, TopP = 0.95f, Seed = a.ULong("--seed") ?? 42 },
        };
        err.WriteLine($"prompt ({ids.Length} tokens, chat template): {prompt}");
        err.WriteLine("--- generated (random weights, so the text is noise; the point is the machinery and its speed) ---");
        var result = generator.Generate(ids, options, piece => { Console.Write(piece); Console.Out.Flush(); }, cancel);
        Console.WriteLine();
        err.WriteLine("---");
        err.WriteLine(RunCommand.StatsLine(result));
        return 0;
    }
}
