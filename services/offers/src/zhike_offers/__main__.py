from zhike_offers.app import DEFINITION
from zhike_runtime.app import run

if __name__ == "__main__":
    run(DEFINITION)
