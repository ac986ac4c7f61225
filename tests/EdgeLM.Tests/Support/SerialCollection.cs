namespace EdgeLM.Tests.Support;

/// <summary>
/// Tests that measure process-wide quantities (managed heap size, peak RSS) run alone: xunit runs this collection
/// after the parallel ones, so other tests' allocations cannot show up in their numbers.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialCollection
{
    public const string Name = "Serial (process-wide measurements)";
}
