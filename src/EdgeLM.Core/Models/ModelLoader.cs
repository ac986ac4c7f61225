using System.Globalization;
using EdgeLM.Formats.Gguf;
using EdgeLM.Formats.HuggingFace;
using EdgeLM.Tensors;

namespace EdgeLM.Models;

/// <summary>Opens a model from a GGUF file or a Hugging Face folder (config.json + safetensors).</summary>
public static class ModelLoader
{
    public static readonly string[] SupportedArchitectures = ["qwen2", "llama", "qwen", "qwen3"];

    public static LoadedModel Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) return LoadHf(full);
        if (!File.Exists(full)) throw new FileNotFoundException($"model not found: {path}", full);

        if (IsGguf(full)) return LoadGguf(full);
        // A file inside a Hugging Face folder stands for the folder.
        string name = Path.GetFileName(full);
        if (name == HfFolder.ConfigFileName || name.EndsWith(".safetensors", StringComparison.Ordinal) || name.EndsWith(".safetensors.index.json", StringComparison.Ordinal))
            return LoadHf(Path.GetDirectoryName(full)!);
        throw new InvalidDataException($"{path} is neither a GGUF file nor a Hugging Face model folder");
    }

    private static bool IsGguf(string file)
    {
        Span<byte> magic = stackalloc byte[4];
        using var fs = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
        return fs.ReadAtLeast(magic, 4, throwOnEndOfStream: false) == 4 && magic.SequenceEqual("GGUF"u8);
    }

    private static LoadedModel LoadGguf(string path)
    {
        var gguf = GgufFile.Open(path);
        try
        {
            var config = ConfigFromGguf(gguf.Metadata, gguf.Tensors);
            return new LoadedModel(gguf, config, gguf.Tensors, gguf.Metadata, path, "gguf", gguf.FileLength, null);
        }
        catch
        {
            gguf.Dispose();
            throw;
        }
    }

    private static LoadedModel LoadHf(string dir)
    {
        var hf = HfFolder.Open(dir);
        try
        {
            var config = hf.ModelConfig;
            return new LoadedModel(hf, config, hf.Tensors, hf.BuildGgufMetadata(), hf.Directory, "hf", hf.FileBytes, hf.TokenizerJsonPath)
            {
                TiktokenPath = hf.TiktokenPath,
            };
        }
        catch
        {
            hf.Dispose();
            throw;
        }
    }

    /// <summary>The hyper-parameters llama.cpp reads for qwen2/qwen3/qwen/llama, with its defaults for the optional ones.</summary>
    public static ModelConfig ConfigFromGguf(GgufMetadata m, IReadOnlyDictionary<string, Tensor> tensors)
    {
        string arch = m.GetString("general.architecture") ?? throw new InvalidDataException("missing metadata 'general.architecture'");
        if (!SupportedArchitectures.Contains(arch))
            throw new InvalidDataException($"unsupported architecture '{arch}' (supported: {string.Join(", ", SupportedArchitectures)})");

        int embd = Int($"{arch}.embedding_length");
        int heads = Int($"{arch}.attention.head_count");
        if (heads <= 0) throw new InvalidDataException($"metadata '{arch}.attention.head_count' is {heads}");

        int vocab;
        if (m.TryGet("tokenizer.ggml.tokens", out var tokens) && tokens.Value is Array tokenArray)
            vocab = tokenArray.Length;
        else if (tensors.TryGetValue("token_embd.weight", out var embdTensor) && embdTensor.Shape.Length == 2)
            vocab = checked((int)embdTensor.Shape[1]);
        else
            throw new InvalidDataException("cannot tell the vocabulary size: no tokenizer.ggml.tokens and no 2-D token_embd.weight");

        int feedForward = Int($"{arch}.feed_forward_length");
        // llama.cpp's qwen (v1) keeps config.json's intermediate_size, twice the MLP width (its tensors are n_ff/2 wide).
        if (arch == "qwen")
        {
            if (feedForward % 2 != 0) throw new InvalidDataException($"metadata 'qwen.feed_forward_length' = {feedForward} is odd; Qwen stores twice the MLP width");
            feedForward /= 2;
        }

        return new ModelConfig
        {
            Architecture = arch,
            Name = m.GetString("general.name") ?? "",
            VocabSize = vocab,
            HiddenSize = embd,
            IntermediateSize = feedForward,
            LayerCount = Int($"{arch}.block_count"),
            HeadCount = heads,
            KvHeadCount = OptInt($"{arch}.attention.head_count_kv") ?? heads,
            HeadDim = OptInt($"{arch}.attention.key_length") ?? embd / heads,
            ContextLength = Int($"{arch}.context_length"),
            RopeTheta = Float($"{arch}.rope.freq_base") ?? 10000.0,
            RmsNormEps = Float($"{arch}.attention.layer_norm_rms_epsilon") ?? throw new InvalidDataException($"missing metadata '{arch}.attention.layer_norm_rms_epsilon'"),
            // llama.cpp's converter permutes Llama q/k into interleaved pairs; Qwen2 keeps NeoX halves.
            RopeStyle = arch == "llama" ? RopeStyle.Interleaved : RopeStyle.Neox,
            TiedEmbeddings = !tensors.ContainsKey("output.weight"),
            BosTokenId = OptInt("tokenizer.ggml.bos_token_id"),
            EosTokenId = OptInt("tokenizer.ggml.eos_token_id"),
        };

        int Int(string key) => OptInt(key) ?? throw new InvalidDataException($"missing metadata '{key}'");

        int? OptInt(string key)
        {
            long? v = m.GetInteger(key);
            if (v is null) return null;
            if (v < 0 || v > int.MaxValue) throw new InvalidDataException($"metadata '{key}' = {v} is out of range");
            return (int)v;
        }

        // GGUF stores these as f32 converted from the decimal in config.json; the shortest decimal that
        // round-trips the f32 recovers that value (1e-06, not 9.99999997e-07), so both loaders agree.
        double? Float(string key)
        {
            double? v = m.GetFloat(key);
            if (v is null || !m.TryGet(key, out var raw) || raw.Type != GgufValueType.Float32) return v;
            return double.Parse(((float)v.Value).ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        }
    }
}
