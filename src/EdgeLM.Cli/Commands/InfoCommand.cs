using EdgeLM.Models;
using EdgeLM.Tensors;

namespace EdgeLM.Cli.Commands;

internal sealed class InfoCommand : Command
{
    public override string Name => "info";
    public override string Summary => "architecture, hyper-parameters and tensor table of a model";
    public override string Usage => "edgelm info -m MODEL [--metadata]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelOptions.Model,
        new("--metadata", null, null, "also list every metadata key"),
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        using var model = ModelOptions.Load(a);
        var c = model.Config;
        var o = Console.Out;
        o.WriteLine($"model:            {model.SourcePath} ({model.Format})");
        if (c.Name.Length > 0) o.WriteLine($"name:             {c.Name}");
        o.WriteLine($"architecture:     {c.Architecture}");
        o.WriteLine($"vocabulary:       {c.VocabSize}");
        o.WriteLine($"hidden size:      {c.HiddenSize}");
        o.WriteLine($"ffn size:         {c.IntermediateSize}");
        o.WriteLine($"layers:           {c.LayerCount}");
        o.WriteLine($"attention heads:  {c.HeadCount} (kv heads {c.KvHeadCount}, head dim {c.HeadDim})");
        o.WriteLine($"context length:   {c.ContextLength}");
        o.WriteLine($"rope:             theta {c.RopeTheta:G}, {c.RopeStyle}");
        o.WriteLine($"rms norm eps:     {c.RmsNormEps:G}");
        o.WriteLine($"tied embeddings:  {(c.TiedEmbeddings ? "yes" : "no")}");
        o.WriteLine($"tokenizer:        {DescribeTokenizer(model)}");
        if (a.Flag("--metadata"))
        {
            o.WriteLine();
            foreach (var (key, value) in model.Metadata.Entries) o.WriteLine($"  {key} = {Shorten(value.ToString())}");
        }
        o.WriteLine();
        o.WriteLine($"  {"tensor",-32} {"type",-6} {"shape",-22} {"bytes",14}");
        long bytes = 0, parameters = 0;
        var byType = new SortedDictionary<string, long>();
        foreach (var t in model.Tensors.Values.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            o.WriteLine($"  {t.Name,-32} {t.Type,-6} {"[" + string.Join(", ", t.Shape) + "]",-22} {t.ByteLength,14:N0}");
            bytes += t.ByteLength;
            parameters += t.ElementCount;
            byType[t.Type.ToString()] = byType.GetValueOrDefault(t.Type.ToString()) + 1;
        }
        o.WriteLine();
        o.WriteLine($"tensors:          {model.Tensors.Count} ({string.Join(", ", byType.Select(kv => $"{kv.Value} {kv.Key}"))})");
        o.WriteLine($"parameters:       {parameters:N0} ({parameters / 1e9:F3} B)");
        o.WriteLine($"tensor bytes:     {bytes:N0} ({bytes / (double)(1 << 20):F1} MiB, {8.0 * bytes / parameters:F2} bits per weight)");
        o.WriteLine($"file bytes:       {model.FileBytes:N0}");
        return 0;
    }

    // info describes any file it can parse, so a tokenizer we cannot use is reported, not fatal.
    private static string DescribeTokenizer(LoadedModel model)
    {
        try
        {
            var tok = ModelTokenizers.Load(model);
            return tok == null ? "none"
                : $"{tok.VocabSize} tokens, bos {tok.BosId?.ToString() ?? "-"}, eos {tok.EosId?.ToString() ?? "-"}, chat template {(tok.ChatTemplate != null ? "yes" : "no")}";
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException or IOException)
        {
            return "unsupported (" + e.Message.ReplaceLineEndings(" ") + ")";
        }
    }

    private static string Shorten(string s) => s.Length > 120 ? s[..117] + "..." : s.ReplaceLineEndings("\\n");
}
