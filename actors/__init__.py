"""pykka actors: one PositionActor per position, the WaveCoordinator, and market-data fan-out."""
