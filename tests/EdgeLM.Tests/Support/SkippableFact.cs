using System.ComponentModel;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace EdgeLM.Tests.Support;

/// <summary>
/// A [Fact] that can decide at run time that it does not apply here (<see cref="SkipTest.Unless"/>): it is then
/// reported as skipped, with the reason, instead of passing silently. xunit 2 has no dynamic skip of its own (its
/// Assert.Skip needs v3), so this is the usual SkippableFact pattern: the test case turns the failure carrying a
/// <see cref="SkipTestException"/> into a skip.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
[XunitTestCaseDiscoverer("EdgeLM.Tests.Support.SkippableFactDiscoverer", "EdgeLM.Tests")]
public sealed class SkippableFactAttribute : FactAttribute;

/// <summary>Thrown by <see cref="SkipTest"/>; a <see cref="SkippableFactAttribute"/> test reports it as a skip.</summary>
public sealed class SkipTestException(string reason) : Exception(reason);

public static class SkipTest
{
    /// <summary>Ends the test as skipped with <paramref name="reason"/> unless <paramref name="condition"/> holds.</summary>
    public static void Unless(bool condition, string reason)
    {
        if (!condition) throw new SkipTestException(reason);
    }
}

public sealed class SkippableFactDiscoverer(IMessageSink diagnosticMessageSink) : FactDiscoverer(diagnosticMessageSink)
{
    protected override IXunitTestCase CreateTestCase(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo factAttribute) =>
        new SkippableTestCase(DiagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(), discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod);
}

public sealed class SkippableTestCase : XunitTestCase
{
    [EditorBrowsable(EditorBrowsableState.Never)]
    [Obsolete("For the deserializer only")]
    public SkippableTestCase() { }

    public SkippableTestCase(IMessageSink sink, TestMethodDisplay display, TestMethodDisplayOptions options, ITestMethod method)
        : base(sink, display, options, method) { }

    public override async Task<RunSummary> RunAsync(IMessageSink diagnosticMessageSink, IMessageBus messageBus, object[] constructorArguments,
        ExceptionAggregator aggregator, CancellationTokenSource cancellationTokenSource)
    {
        var bus = new SkippingMessageBus(messageBus);
        var summary = await base.RunAsync(diagnosticMessageSink, bus, constructorArguments, aggregator, cancellationTokenSource);
        summary.Failed -= bus.Skipped;
        summary.Skipped += bus.Skipped;
        return summary;
    }

    /// <summary>Passes every message on, except a failure by <see cref="SkipTestException"/>, which becomes a skip.</summary>
    private sealed class SkippingMessageBus(IMessageBus inner) : IMessageBus
    {
        public int Skipped { get; private set; }

        public bool QueueMessage(IMessageSinkMessage message)
        {
            if (message is ITestFailed failed && failed.ExceptionTypes.FirstOrDefault() == typeof(SkipTestException).FullName)
            {
                Skipped++;
                return inner.QueueMessage(new TestSkipped(failed.Test, failed.Messages.FirstOrDefault() ?? "skipped"));
            }
            return inner.QueueMessage(message);
        }

        public void Dispose() { } // the inner bus belongs to the runner
    }
}
