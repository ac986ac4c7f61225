namespace EdgeLM.Evaluation;

/// <summary>lm-eval's multiple-choice metrics (ConfigurableTask.process_results) and aggregations (api/metrics.py).</summary>
public static class Metrics
{
    /// <summary>
    /// acc: the choice with the highest log-likelihood is the gold one. acc_norm: the same after dividing each
    /// log-likelihood by the length of its choice text in code points (without the delimiter). Ties go to the first
    /// index, as numpy.argmax.
    /// </summary>
    public static (double Acc, double AccNorm) MultipleChoice(IReadOnlyList<double> logLikelihoods, IReadOnlyList<string> choices, int gold)
    {
        if (logLikelihoods.Count != choices.Count || choices.Count == 0)
            throw new ArgumentException($"{logLikelihoods.Count} log-likelihoods for {choices.Count} choices");
        if (gold < 0 || gold >= choices.Count) throw new ArgumentOutOfRangeException(nameof(gold), $"gold index {gold} outside {choices.Count} choices");
        int best = 0, bestNorm = 0;
        double bestNormValue = logLikelihoods[0] / PythonText.CodePointLength(choices[0]);
        for (int i = 1; i < choices.Count; i++)
        {
            if (logLikelihoods[i] > logLikelihoods[best]) best = i;
            double norm = logLikelihoods[i] / PythonText.CodePointLength(choices[i]);
            if (norm > bestNormValue) { bestNormValue = norm; bestNorm = i; }
        }
        return (best == gold ? 1 : 0, bestNorm == gold ? 1 : 0);
    }

    /// <summary>sum(arr) / len(arr), summed left to right as Python does.</summary>
    public static double Mean(IReadOnlyList<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("mean of no values");
        double sum = 0;
        foreach (double v in values) sum += v;
        return sum / values.Count;
    }

    /// <summary>mean_stderr: sample standard deviation (n - 1) over sqrt(n); null for fewer than two values (lm-eval's "N/A").</summary>
    public static double? MeanStderr(IReadOnlyList<double> values)
    {
        int n = values.Count;
        if (n < 2) return null;
        double mean = Mean(values);
        double sq = 0;
        foreach (double v in values) sq += (v - mean) * (v - mean);
        return Math.Sqrt(sq / (n - 1)) / Math.Sqrt(n);
    }
}
