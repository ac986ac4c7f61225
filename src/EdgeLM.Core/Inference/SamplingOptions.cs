namespace EdgeLM.Inference;

/// <summary>
/// How the next token is chosen from the logits. Defaults follow llama.cpp's CLI defaults.
/// Applied in the order: repetition penalty, top-k, softmax with temperature, top-p, min-p, draw.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>Softmax temperature; 0 selects the argmax (greedy) and ignores top-k, top-p and min-p.</summary>
    public float Temperature { get; init; } = 0.8f;

    /// <summary>Keep only the K most likely tokens; 0 disables.</summary>
    public int TopK { get; init; } = 40;

    /// <summary>Keep the smallest set of most likely tokens whose probability mass reaches P; 1 disables.</summary>
    public float TopP { get; init; } = 0.95f;

    /// <summary>Drop tokens whose probability is below MinP times that of the most likely token; 0 disables.</summary>
    public float MinP { get; init; } = 0.05f;

    /// <summary>
    /// llama.cpp / Hugging Face semantics: for each distinct token among the last <see cref="RepetitionWindow"/>
    /// tokens, a positive logit is divided by the penalty and a negative one multiplied by it. 1 disables.
    /// </summary>
    public float RepetitionPenalty { get; init; } = 1.0f;

    /// <summary>How many of the most recent tokens the repetition penalty looks at.</summary>
    public int RepetitionWindow { get; init; } = 64;

    /// <summary>Seed of the sampler's generator; null draws one from the OS.</summary>
    public ulong? Seed { get; init; }

    /// <summary>Greedy decoding: always the most likely token.</summary>
    public static SamplingOptions Greedy { get; } = new() { Temperature = 0f };

    public bool IsGreedy => Temperature == 0f;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first out-of-range setting.</summary>
    public void Validate()
    {
        // Written as "!(in range)" so that NaN, which fails every comparison, is rejected too.
        if (!(Temperature >= 0f && float.IsFinite(Temperature)))
            throw new ArgumentException($"sampling temperature must be a finite number >= 0, got {Temperature}");
        if (TopK < 0)
            throw new ArgumentException($"sampling top-k must be >= 0 (0 = off), got {TopK}");
        if (!(TopP > 0f && TopP <= 1f))
            throw new ArgumentException($"sampling top-p must be in (0, 1] (1 = off), got {TopP}");
        if (!(MinP >= 0f && MinP < 1f))
            throw new ArgumentException($"sampling min-p must be in [0, 1) (0 = off), got {MinP}");
        if (!(RepetitionPenalty > 0f && float.IsFinite(RepetitionPenalty)))
            throw new ArgumentException($"repetition penalty must be a finite number > 0 (1 = off), got {RepetitionPenalty}");
        if (RepetitionWindow < 0)
            throw new ArgumentException($"repetition window must be >= 0, got {RepetitionWindow}");
    }
}
