namespace EdgeLM.Models;

/// <summary>How rotary embedding pairs dimensions within a head.</summary>
public enum RopeStyle
{
    /// <summary>GPT-NeoX / Hugging Face rotate_half: dimension i pairs with i + headDim/2 (Qwen2, HF Llama).</summary>
    Neox,
    /// <summary>Original Llama / GGUF "llama": dimension 2i pairs with 2i+1 (llama.cpp permutes q/k on conversion).</summary>
    Interleaved,
}

/// <summary>Hyper-parameters of a decoder-only transformer, always read from the model file.</summary>
public sealed record ModelConfig
{
    public required string Architecture { get; init; }      // "qwen2", "llama", ...
    public string Name { get; init; } = "";
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int LayerCount { get; init; }
    public required int HeadCount { get; init; }
    public required int KvHeadCount { get; init; }
    public required int HeadDim { get; init; }
    public required int ContextLength { get; init; }
    public double RopeTheta { get; init; } = 10000.0;
    public double RmsNormEps { get; init; } = 1e-6;
    public RopeStyle RopeStyle { get; init; } = RopeStyle.Neox;
    public bool TiedEmbeddings { get; init; }
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }

    public int QDim => HeadCount * HeadDim;
    public int KvDim => KvHeadCount * HeadDim;

    /// <summary>Rejects hyper-parameters no real model has, before anything is allocated from them.</summary>
    public void Validate()
    {
        static void Check(bool ok, string what) { if (!ok) throw new InvalidDataException($"invalid model config: {what}"); }
        Check(VocabSize is > 0 and <= 4_000_000, $"vocab size {VocabSize}");
        Check(HiddenSize is > 0 and <= 65_536, $"hidden size {HiddenSize}");
        Check(IntermediateSize is > 0 and <= 1_048_576, $"intermediate size {IntermediateSize}");
        Check(LayerCount is > 0 and <= 1024, $"layer count {LayerCount}");
        Check(HeadCount is > 0 and <= 1024, $"head count {HeadCount}");
        Check(KvHeadCount > 0 && KvHeadCount <= HeadCount && HeadCount % KvHeadCount == 0, $"kv head count {KvHeadCount} with {HeadCount} heads");
        Check(HeadDim is > 0 and <= 1024 && HeadDim % 2 == 0, $"head dim {HeadDim}");
        Check(ContextLength is > 0 and <= 16_777_216, $"context length {ContextLength}");
        Check(RopeTheta > 0 && double.IsFinite(RopeTheta), $"rope theta {RopeTheta}");
        Check(RmsNormEps > 0 && RmsNormEps < 1, $"rms norm eps {RmsNormEps}");
    }
}
