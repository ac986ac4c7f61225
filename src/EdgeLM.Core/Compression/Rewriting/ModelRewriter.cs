using EdgeLM.Formats.Gguf;
using EdgeLM.Formats.HuggingFace;
using EdgeLM.Formats.Safetensors;
using EdgeLM.Models;
using EdgeLM.Tensors;

namespace EdgeLM.Compression.Rewriting;

/// <summary>One tensor of a rewritten model: GGUF name, type, ggml-order shape and a producer of exactly its bytes.</summary>
public sealed record OutputTensor(string Name, GgmlType Type, long[] Shape, Action<Stream> WriteData)
{
    /// <summary>The source tensor's bytes unchanged (under a possibly new name).</summary>
    public static unsafe OutputTensor CopyOf(string name, Tensor source) => new(name, source.Type, source.Shape, stream =>
    {
        const int Slice = 1 << 24;
        for (long offset = 0; offset < source.ByteLength; offset += Slice)
            stream.Write(new ReadOnlySpan<byte>(source.Data + offset, (int)Math.Min(Slice, source.ByteLength - offset)));
    });
}

/// <summary>
/// Writes a model derived from a loaded one (pruned, merged) as a GGUF file or a Hugging Face folder, never visible
/// half-written: GGUF through <see cref="GgufWriter"/>'s atomic rename, folders built under a temporary name beside
/// the target and renamed into place when complete.
/// </summary>
public static class ModelRewriter
{
    private static readonly string[] TokenizerFiles =
        ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
         "generation_config.json", HfFolder.TiktokenFileName];

    /// <summary>
    /// True when <paramref name="output"/> names a Hugging Face folder: --hf, an existing folder, a trailing separator
    /// or a name without an extension. Anything else (model.gguf, x.bin) is a GGUF file.
    /// </summary>
    public static bool IsFolderOutput(string output, bool forceHf)
    {
        ArgumentException.ThrowIfNullOrEmpty(output);
        return forceHf || Directory.Exists(output) || Path.EndsInDirectorySeparator(output) || !Path.HasExtension(output);
    }

    /// <summary>Fails before any work when the output cannot be written (missing parent, non-empty folder, the input itself).</summary>
    public static void CheckOutput(string input, string output, bool folder)
    {
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(output));
        string parent = Path.GetDirectoryName(full) ?? ".";
        if (!Directory.Exists(parent)) throw new DirectoryNotFoundException($"output folder not found: {parent}");
        var comparison = OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        string inputFull = Path.TrimEndingDirectorySeparator(Path.GetFullPath(input));
        if (string.Equals(full, inputFull, comparison) || inputFull.StartsWith(full + Path.DirectorySeparatorChar, comparison))
            throw new ArgumentException($"output {output} would overwrite the input");
        if (folder)
        {
            if (File.Exists(full)) throw new ArgumentException($"output {output} is a file, expected a folder for a Hugging Face model");
            if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
                throw new ArgumentException($"output folder {output} is not empty");
        }
        else if (Directory.Exists(full)) throw new ArgumentException($"output {output} is a folder");
    }

    /// <summary>
    /// The source's metadata (for a Hugging Face source: llama.cpp's keys plus its tokenizer) with the hyper-parameters
    /// of <paramref name="config"/> that a rewrite can change (block count) updated.
    /// </summary>
    public static GgufMetadata BuildMetadata(LoadedModel source, ModelConfig config)
    {
        var md = new GgufMetadata();
        foreach (var (key, value) in source.Metadata.Entries) md.Set(key, value);
        if (source.Format == "hf" && !md.Contains("tokenizer.ggml.tokens"))
            ModelTokenizers.Load(source)?.WriteToGgufMetadata(md, config.VocabSize);
        md.Remove("split.no");
        md.Remove("split.count");
        md.Remove("split.tensors.count");
        md.Set($"{config.Architecture}.block_count", GgufValue.Of((uint)config.LayerCount));
        return md;
    }

    public static void WriteGguf(string path, GgufMetadata metadata, IEnumerable<OutputTensor> tensors)
    {
        var writer = new GgufWriter();
        foreach (var (key, value) in metadata.Entries) writer.Metadata.Set(key, value);
        foreach (var t in tensors) writer.AddTensor(t.Name, t.Type, t.Shape, t.WriteData);
        writer.Write(path);
    }

    /// <summary>
    /// Writes config.json, safetensors (Hugging Face names) and the source folder's tokenizer files. Returns a warning
    /// when the output has no tokenizer (a GGUF source carries none in Hugging Face form), else null.
    /// </summary>
    public static string? WriteHuggingFace(string dir, LoadedModel source, ModelConfig config, IReadOnlyList<OutputTensor> tensors)
    {
        foreach (var t in tensors)
        {
            if (t.Type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
                throw new NotSupportedException($"tensor '{t.Name}' is {t.Type}; a Hugging Face folder holds F32, F16 or BF16 tensors only (write a .gguf instead)");
            if (HfTensorNames.ToHf(t.Name, config.Architecture) is null)
                throw new NotSupportedException($"tensor '{t.Name}' has no Hugging Face name for architecture '{config.Architecture}'");
        }
        var embedding = tensors.FirstOrDefault(t => t.Name == "token_embd.weight")
            ?? throw new InvalidDataException("the model has no token_embd.weight");
        string torchDtype = HfFolder.TorchDtypeName(embedding.Type);

        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir));
        string tmp = $"{full}.tmp-{Guid.NewGuid():N}";
        try
        {
            Directory.CreateDirectory(tmp);
            var writer = new ShardedSafetensorsWriter(maxShardBytes: 4L << 30);
            foreach (var t in tensors)
                writer.Add(HfTensorNames.ToHf(t.Name, config.Architecture)!, t.Type, t.Shape.Reverse().ToArray(), t.WriteData);
            writer.Write(tmp);
            HfFolder.WriteConfig(tmp, config, torchDtype);
            bool tokenizer = false;
            if (source.Format == "hf")
            {
                foreach (string name in TokenizerFiles)
                {
                    string from = Path.Combine(source.SourcePath, name);
                    if (!File.Exists(from)) continue;
                    File.Copy(from, Path.Combine(tmp, name));
                    tokenizer |= name is "tokenizer.json" or HfFolder.TiktokenFileName;
                }
            }
            // An empty target folder (checked by CheckOutput) is replaced; the rename is what makes the output appear.
            if (Directory.Exists(full)) Directory.Delete(full);
            Directory.Move(tmp, full);
            return tokenizer ? null : $"{dir} has no tokenizer.json (the source {source.SourcePath} has none in Hugging Face form)";
        }
        catch
        {
            try { if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }
}
