using System.Globalization;
using System.Runtime.InteropServices;
using EdgeLM.Formats;

namespace EdgeLM.Cli.Commands;

internal sealed class LogitsCommand : Command
{
    public override string Name => "logits";
    public override string Summary => "teacher-forced logits of every position, as raw float32 (to compare engines)";
    public override string Usage => "edgelm logits -m MODEL (--ids 1,2,3 | -p TEXT) --out FILE";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelOptions.Model,
        new("--ids", null, "LIST", "comma-separated token ids"),
        new("--prompt", "-p", "TEXT", "text, tokenized with the model's tokenizer"),
        new("--out", "-o", "FILE", "output: n_tokens x n_vocab float32, row-major, little-endian"),
        ModelOptions.Threads, ModelOptions.Tokenizer,
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        string output = a.Require("--out");
        using var model = ModelOptions.Load(a);
        int[] ids = a.Get("--ids") is { } list ? ParseIds(list, model.Config.VocabSize)
            : a.Get("--prompt") is { } text ? ModelOptions.LoadTokenizer(model, a).Encode(text)
            : throw new UsageException("give --ids 1,2,3 or -p TEXT");
        if (ids.Length == 0) throw new UsageException("no tokens to run");
        if (ids.Length > model.Config.ContextLength)
            throw new ArgumentException($"{ids.Length} tokens exceed the model's context of {model.Config.ContextLength}");

        using var session = new Inference.InferenceSession(model.Config, model.Weights, ids.Length, ModelOptions.ThreadCount(a));
        int vocab = model.Config.VocabSize;
        long total = (long)ids.Length * vocab;
        if (total > int.MaxValue / 4) throw new ArgumentException($"{ids.Length} x {vocab} logits do not fit in one output buffer; use fewer tokens");
        var logits = new float[total];
        session.ForwardAll(ids, logits);
        AtomicFile.Write(output, stream => stream.Write(MemoryMarshal.AsBytes(logits.AsSpan())));
        Console.Error.WriteLine($"wrote {ids.Length} x {vocab} float32 logits to {output}");
        return 0;
    }

    internal static int[] ParseIds(string list, int vocab)
    {
        var parts = list.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out ids[i]))
                throw new UsageException($"'{parts[i]}' is not a token id");
            if (ids[i] < 0 || ids[i] >= vocab) throw new ArgumentException($"token id {ids[i]} is outside the vocabulary (0..{vocab - 1})");
        }
        return ids;
    }
}
