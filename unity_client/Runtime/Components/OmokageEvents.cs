using System;
using UnityEngine;
using UnityEngine.Events;

namespace Omokage.Client.Components
{
    /// <summary>A UnityEvent with a URL (the product page of a decision).</summary>
    [Serializable]
    public class OmokageUrlEvent : UnityEvent<string> { }

    /// <summary>A UnityEvent with an error: its code (the server's <c>error.code</c> or one of the
    /// <see cref="OmokageError"/> client codes) and a sentence for people.</summary>
    [Serializable]
    public class OmokageErrorEvent : UnityEvent<string, string> { }

    /// <summary>A UnityEvent with something to tell the user: a title and a sentence (v1.7: the selection went on on another
    /// connection, <see cref="CandidateGrid.onWentElsewhere"/>).</summary>
    [Serializable]
    public class OmokageMessageEvent : UnityEvent<string, string> { }

    /// <summary>A UnityEvent with a calibration's quality (protocol v1.4 <c>calibrated</c>): accuracy and precision in
    /// degrees.</summary>
    [Serializable]
    public class OmokageCalibratedEvent : UnityEvent<float, float> { }

    /// <summary>A UnityEvent with a texture (protocol v1.5: the ideal face's image, <see cref="CandidateGrid.onIdealShown"/>).</summary>
    [Serializable]
    public class OmokageTextureEvent : UnityEvent<Texture2D> { }
}
